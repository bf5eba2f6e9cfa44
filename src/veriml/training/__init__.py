"""Verified training, the chain-free part: a reproducible training runtime, proof-of-learning logs and their
verifier, and Verde-style pinpointed disputes.

    rng         counter-based RNG: init, data order, dropout, a verifier's draws (pure in seed/stream/counter)
    repops      float32 operators with a fixed rounding order (pairwise-tree sums, own exp/log)
    graph       a step as a Program of operators; its trace as Merkle leaves (op, inputs, output)
    data        the dataset commitment and the seeded batch schedule
    mlp         TrainConfig, seeded init, one training step (forward, backward, SGD-momentum or Adam)
    plain       the same model in plain PyTorch, the fast non-reproducible path, for comparison
    checkpoint  safetensors checkpoints, weights roots, the PoL log and its commitment
    trainer     the solver's loop, and cheating solvers as data (`Cheat`)
    pol         the proof-of-learning verifier (largest-change and random intervals replayed)
    dispute     bisection to a step, then to a record, and the one-operator referee

The pure narrowing over digests is `veriml.verify.pinpoint`. On-chain jobs, verifier sampling, forced errors
and settlement are not here: they go on the scheme seam.
"""
