"""Docker Swarm: a service of `engine = "swarm"` runs as a stack of the swarm whose manager
this machine is, deployed with `docker stack deploy` from the model compose resolved.

    stackfile.py   the compose model -> the stack file swarm reads; what swarm ignores or
                   refuses in a model, in one line
    stack.py       one stack: the face of pgo.compose.Project (up, down, running, stream...)
                   over `docker stack` and `docker service`
    converge.py    the health gate of a stack: every service's update completed, its
                   desired tasks running (healthy, where there is a healthcheck)
    drift.py       a stack's drift (swarm services gone, unknown, or changed by hand) and
                   its tasks' failures (logged, told, a crash loop on the status page)
    (Stack.manager_problem in stack.py: is the engine a swarm manager)

Everything else (the checkout, secrets, the policy, the history, rollback, SSH, events and
repairs: pgo.watch, pgo.repair) is the compose engine's, unchanged: a
pgo.service.TrackedService whose project is a Stack.
"""
