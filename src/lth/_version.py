"""lth's version, in a module of its own: the package (`lth.__version__`) and the report page both
read it here, and the page need not reach into a package that may still be importing."""

__version__ = "0.1.0"  # as pyproject.toml's [project] version
