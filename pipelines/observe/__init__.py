"""Where operators look (contract section 12): each run's Prometheus metrics (pushed to a
Pushgateway, or written for node_exporter's textfile collector) and its OpenLineage events.
Neither can cost the run: an endpoint that does not answer is one warning line."""
