"""`kiloml fleet serve`: devices (or their gateways) POST kml_telemetry_v1 records over
HTTP into the fleet database, and a dashboard page shows the fleet. FastAPI under uvicorn
(the fleet extra); the records go through kiloml.telemetry's codec and ingest path."""
