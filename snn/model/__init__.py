"""The network model (DESIGN.md §6): neuron models, populations and
projections (:mod:`.graph`), connectivity builders, and layers and stacks
(:mod:`.layers`, :mod:`.conv`, :mod:`.network`) as the short way to write a
chain of populations. Its public names are exported by :mod:`snn`."""
