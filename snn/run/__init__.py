"""Running the model: the schedule of a graph run (:mod:`.schedule`), the
step-by-step engine (:mod:`.stepped`), the paths and cost model of a
population run as a layer (:mod:`.paths`), delta propagation over frames
(:mod:`.delta`), the clock-driven reference (:mod:`.reference`), spike
trains and results. Its public names are exported by :mod:`snn`."""
