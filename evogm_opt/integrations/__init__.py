"""Adapters to other tools' extension points (Optuna samplers, Ray Tune searchers); each needs its extra."""
