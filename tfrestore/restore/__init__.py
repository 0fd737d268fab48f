"""Image restoration around the networks: degradation operators, classical baselines and the adversarial
defences."""
