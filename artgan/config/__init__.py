"""Experiment specs (`spec`) and search spaces (`space`): YAML in, validated objects out,
and the one definition of which searches are comparable (`ExperimentSpec.comparable`)."""
