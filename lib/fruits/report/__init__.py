"""The report: what a notebook shows, and how a notebook becomes one HTML file.

Inside a notebook (local kernel, or Livy's REPL behind sparkmagic):

- :mod:`fruits.report.display`: banners, tables, the evaluation, ``%matplot`` in a local kernel;
- :mod:`fruits.report.explore`: small, bounded pandas views of a run's written outputs;
- :mod:`fruits.report.plots`: the figures, each from plain data, each with its alt text.

After the notebook, on the machine that ran papermill:

- :mod:`fruits.run.notebook`: execute a notebook with papermill, render it with nbconvert;
- :mod:`fruits.report.html`: the offline HTML page (alt texts, no network request);
- :mod:`fruits.report.interactive`: the page's interactive PCA map.

Nothing is imported here, so ``from fruits.report import plots`` loads only what it names.
"""
