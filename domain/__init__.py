"""The desk's own rules, below every other package: the one error tree and a
request's lifecycle. Pure: it imports nothing of the project and does no I/O."""
