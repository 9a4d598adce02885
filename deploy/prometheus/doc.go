// Package prometheus holds the Prometheus alert rules of the upstreamtier plugin's metrics; its tests check them with promtool and on a live Prometheus.
package prometheus
