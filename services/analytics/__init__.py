"""analytics: the read model of every event — KPIs, satisfaction surveys, and the live SLA-breach feed."""
