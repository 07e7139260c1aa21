"""The contracts every part shares: the search space, recipes, budgets, the pair catalogue, the table
schema and where files live. Nothing here trains or searches; torch is imported only where a recipe
builds an optimiser schedule."""
