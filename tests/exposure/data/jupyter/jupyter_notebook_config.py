# ruff: noqa  (a configuration file as users write them, kept as is)
# Configuration file for jupyter-notebook (generated, then edited for the lab VM).
import os

c = get_config()  # noqa: F821

## The IP address the notebook server will listen on.
c.NotebookApp.ip = '*'
c.NotebookApp.port = 8888
c.NotebookApp.open_browser = False

## Token used for authenticating first-time connections to the server.
#  Setting to an empty string disables authentication altogether, which is NOT
#  RECOMMENDED.
c.NotebookApp.token = ''
c.NotebookApp.password = u''
c.NotebookApp.allow_origin = '*'
c.NotebookApp.notebook_dir = os.path.expanduser('~/work')
