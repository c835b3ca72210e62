"""The sweep's shell: what runs the core on Ray, Optuna and MLflow.

    sweep      the whole sweep: local Ray, base models, one ``sweeps.study`` per (split, K)
    search     a study's Tune runs on the selection split     schedulers  stopping weak trials between seeds
    jobs       the one Ray Train worker loop                   testphase   the test phase's Tune run
    console    the trials' lines on the console                trial_logger  trials in MLflow as they run
    tracker    the MLflow client                               optuna_space  the space as Optuna's
    prune      deleting what no candidate stands on            localray, reaper  a local Ray and its clean-up
"""
