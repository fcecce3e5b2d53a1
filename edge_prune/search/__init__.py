"""The search for the smallest model that fits: points and space, the workshop that trains and
caches models, the result and its Pareto front, rendering, the Optuna study, its cache and the
sparsity sweep."""
