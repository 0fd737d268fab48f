"""The image optimisation: objective terms, parameterisations, transforms, update rules and schedules, the engine
(a stepper of `core.loop.Loop`) with its callbacks, and the feature-inversion glue."""
