package upstreamtier

// Ready implements ready.Readiness: the plugin is ready once some upstream
// has answered, a startup probe or a client query. It stays ready after:
// when every upstream fails later, clients get a fast SERVFAIL from every
// replica, which beats Kubernetes taking all of them out of the Service and
// with them the cluster's own names.
func (ut *UpstreamTier) Ready() bool { return ut.state.ready.Load() }
