"""The sweep's core: the decisions and their types, no Ray, Optuna or MLflow (not even lazily).

    inputs    the command line -> a checked ``Plan``          plan      the plan and a study's spec
    space     the search space                                 shape     a study's candidates and runs
    jobspec   a seed job and the resources it holds            progress  what a trial reports
    selection the rule on the selection split                  outcome   the statistics and the model to ship
    estimate  a study's cost before and after                  layout    a run folder's paths

``sweeps.shell`` runs it; ``sweeps.study`` joins the two for one study.
"""
