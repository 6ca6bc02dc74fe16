"""``python -m bayes_spheres.report``: the ``bayes-spheres-report`` command (cli.py)."""

from bayes_spheres.report.cli import main

if __name__ == "__main__":
    main()
