"""One router per resource; `service.app.ROUTERS` lists them in the order they are mounted."""
