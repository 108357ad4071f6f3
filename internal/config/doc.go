// Package config is tether's config file: schema, strict loading of JSON,
// YAML and TOML, defaults and validation.
//
// A config file is .tether/config.{json,yaml,yml,toml} in a project (see
// LoadDefault) or any file given to Load. Its keys mirror mirrord's
// feature.* tree one level up ("fs", "env", "outgoing", "dns", "incoming"),
// described by Config and by the JSON schema that Schema returns (checked
// in as schema.json, for editors).
//
// Loading is strict and every problem names its place:
//
//	tether.yaml:7:3: unknown key "fs.mdoe" (did you mean "fs.mode"?)
//	tether.json:3:19: "incoming.ports[1]": want a port number 1-65535, got "abc"
//
// Settings a file leaves out keep their zero values; read them through the
// accessors (FSMode, IncomingMode, EnvEnabled, AgentLinger, ...), which
// apply the defaults. ParseOutgoingFilter and LoadEnvFile parse the
// outgoing filter entries and the env file for the packages that use them.
package config
