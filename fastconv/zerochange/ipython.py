"""``%load_ext fastconv``: serve the book's modules in an IPython shell or Jupyter kernel."""


def load_ipython_extension(ipython):
    from fastconv import zerochange
    zerochange.install()


def unload_ipython_extension(ipython):
    from fastconv import zerochange
    zerochange.uninstall()
