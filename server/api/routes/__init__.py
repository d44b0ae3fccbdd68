"""HTTP routers of the API: sessions, models, health/metrics, and the web player."""
