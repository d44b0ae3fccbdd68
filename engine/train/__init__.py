"""Training of the `tiny` model: Rollcast's scaled-down Self Forcing recipe on CPU.

Stages (each a `rollcast train STAGE` command, see `engine.train.cli` and docs/models.md):
`vae` (the light streaming VAE), `teacher` (bidirectional flow matching with caption dropout),
`ode` (ODE initialisation of the causal student from teacher trajectories), `self-forcing`
(autoregressive rollouts with the KV cache and a DMD loss), and `export` (install the final
weights under engine/weights/).
"""
