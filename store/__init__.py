"""The Redis contract of PEng4NN's service, installed as ``peng4nn_store``: what the API
(``peng4nn_service``) and the workers (``peng4nn_worker``) share, so that neither imports the other.

Every key (`keys`), the job records and their event streams with their Lua scripts (`job_store`),
how values are encoded (`encoding`), the queue and which tasks it may run (`queue`), search
populations (`searches`), housekeeping (`maintenance`), worker liveness (`liveness`), the embedded
Redis server (`embedded`) and the one settings class (`settings`). Imports redis and rq, never
fastapi or torch.
"""
