"""Running tierflow under real Airflow services: ``tierflow airflow start | stop | status``
on one machine (``local.py``; what it runs is described in ``plan.py``). Production runs the
same DAG under docker compose (``docker-compose.yml``, docs/production.md)."""
