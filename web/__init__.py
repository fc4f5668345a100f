"""HTTP front end: app factory, routes per resource, schemas, error mapping."""
