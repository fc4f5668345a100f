"""Infrastructure every domain module stands on: settings (read and checked once at
boot), logging, the database pools and the unit of work, read-replica routing and the
migration runner. Nothing here knows a domain rule."""
