"""RQ worker adapter of PEng4NN, installed as ``peng4nn_worker``: runs the library's train-fit-analyze
loop and publishes each iteration to Redis. Shares Redis with the API only through ``peng4nn_store``;
never imports ``peng4nn_service``."""
