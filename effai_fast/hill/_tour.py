def run(report, n_threads=None):
    pass
