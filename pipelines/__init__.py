"""The vlthinker Kubeflow pipeline: the graph, and the local/cluster entry points that run it."""
