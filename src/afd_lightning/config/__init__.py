"""What a run is asked to do: the recipe keys, the shipped config tree, resolvers, preflight and the run config's one owner."""
