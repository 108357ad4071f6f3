package config

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sync"

	"github.com/invopop/jsonschema"
)

//go:generate go test -run TestSchemaUpToDate -update .

// SchemaID is the $id of the schema Schema returns.
const SchemaID = "https://github.com/tether-dev/tether/internal/config/schema.json"

// Schema returns the JSON schema (draft 2020-12) of a config file,
// generated from Config and its struct tags. It is checked in as
// schema.json (a test fails when that copy is stale); point an editor at it
// to get completion and checks:
//
//	# yaml-language-server: $schema=PATH/TO/schema.json
//
// The schema checks structure, types, enums and port ranges; Load's checks
// (Validate) go further.
func Schema() []byte {
	return bytes.Clone(schemaJSON())
}

var schemaJSON = sync.OnceValue(func() []byte {
	r := &jsonschema.Reflector{
		ExpandedStruct:             true, // Config at the root, not in $defs
		RequiredFromJSONSchemaTags: true, // nothing is required
		Mapper:                     schemaMapper,
	}
	s := r.Reflect(&Config{})
	s.ID = SchemaID
	s.Title = "tether config"
	s.Description = "Config file of tether, which runs a local process in the context of a Kubernetes pod. " +
		"Keys follow mirrord's feature.* tree one level up."
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		panic("config: cannot marshal the JSON schema: " + err.Error())
	}
	return append(b, '\n')
})

// schemaMapper gives the schema of types the reflector cannot infer: every
// uint16 in Config is a port number, and Duration is a string or a number
// of seconds.
func schemaMapper(t reflect.Type) *jsonschema.Schema {
	switch t {
	case reflect.TypeFor[uint16]():
		return &jsonschema.Schema{Type: "integer", Minimum: "1", Maximum: "65535"}
	case targetType:
		props := jsonschema.NewProperties()
		props.Set("path", &jsonschema.Schema{Type: "string", Description: "targetless, pod/NAME[/container/C], deployment/NAME, statefulset/NAME, replicaset/NAME, job/NAME, cronjob/NAME, rollout/NAME or service/NAME."})
		props.Set("selector", &jsonschema.Schema{Type: "string", Description: "A label selector (app=web,tier in (api)): its ready pods are the target. Cannot be used with path."})
		return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
			{Type: "string"},
			{Type: "object", Properties: props, AdditionalProperties: jsonschema.FalseSchema},
		}}
	case durationType:
		return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
			{Type: "string", Pattern: `^\+?(0|([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+)$`},
			{Type: "integer", Minimum: "0"},
		}}
	}
	return nil
}
