package integration

import "github.com/tether-dev/tether/test/harness"

// Ports of the incoming-traffic tests. Each test has its own pod port (the
// pod app serves all of harness.PodAppFirstHTTPPort..PodAppLastHTTPPort),
// so a leftover subscription of one test cannot disturb another. local*
// ports are bound on this machine only (port_mapping, listen_ports, second
// sessions) and must be free here.
const (
	portSelfCheck        = harness.PodAppFirstHTTPPort + iota // 18080
	portMirror                                                // 18081
	portStealAll                                              // 18082
	portFilterHeader                                          // 18083
	portFilterPath                                            // 18084
	portFilterMethod                                          // 18085
	portFilterAllOf                                           // 18086
	portFilterAnyOf                                           // 18087
	portFilterHeaderCase                                      // 18088
	portTwoSessions                                           // 18089
	portOverlap                                               // 18090
	portModeOff                                               // 18091
	portOnlyPorts                                             // 18092
	portOnlyPortsOther                                        // 18093
	portIgnorePorts                                           // 18094
	portIgnorePortsOther                                      // 18095
	portMapping                                               // 18096
	portListenPorts                                           // 18097
	portKillExec                                              // 18098
	portKillWorker                                            // 18099
	portStalePlanted                                          // 18100
	portStaleKilled                                           // 18101
	portEndNormal                                             // 18102
	portEndSIGINT                                             // 18103
	portTransparent                                           // 18104
	portLoopback                                              // 18105
	portLoopbackOptIn                                         // 18106
	portTakeover                                              // 18107
	portAgentStop                                             // 18108
	portMirrorSteal                                           // 18109
)

// portNonHTTP is a pod port with the raw TCP echo (not HTTP).
const portNonHTTP = harness.PodAppFirstEchoPort + 1

// Local-only ports (this machine).
const (
	localSelfCheck = 28080 + iota
	localStealAllThief
	localTwoSessionsBob
	localTwoSessionsThief
	localOverlapSecond
	localMapping
	localListenPorts
	localFilterHeaderCarol
	localMirrorStealBob
)
