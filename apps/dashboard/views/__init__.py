"""Dashboard pages, one module per area: ``shell`` (home, people, keys, settings),
``observe`` (margins, customers, features, models, events) and ``pricing``
(the environment's model price overrides and re-costing)."""
