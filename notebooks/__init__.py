"""The numbered notebooks. This folder is installed with the package as galaxylib.notebooks (package data), so
`python -m galaxylib reproduce` and `galaxylib.reproduce.notebook_folder()` find them in a clone and in a wheel."""
