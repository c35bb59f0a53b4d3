HillRegressor = None
