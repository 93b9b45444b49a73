"""RQ worker adapter: runs the library's train-fit-analyze loop and publishes each iteration to Redis."""
