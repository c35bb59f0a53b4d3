ModelComparison = compare_models = None
