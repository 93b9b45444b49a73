"""One router per resource; `peng4nn_service.app.ROUTERS` lists them in the order they are mounted."""
