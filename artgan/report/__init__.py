"""The HTML report of one run: the run folder read back (`run`), the page's sections
(`sections`, `features`), its figures (`figures`), value formatting (`format`), files and
embedded images (`output`), and the page itself (`build`, `templates/`). Reads run folders
through `artgan.runfolder` only; never imports `tuning`."""
