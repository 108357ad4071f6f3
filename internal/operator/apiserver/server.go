package apiserver

import (
	"fmt"
	"net"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/sets"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	genericfilters "k8s.io/apiserver/pkg/server/filters"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/component-base/compatibility"
	baseversion "k8s.io/component-base/version"

	"github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/operator/apiserver/openapi"
)

// Options configure the API server: where it serves (with which
// certificate), and how it authenticates and authorizes requests
// (delegated to the Kubernetes API server).
type Options struct {
	SecureServing  *genericoptions.SecureServingOptionsWithLoopback
	Authentication *genericoptions.DelegatingAuthenticationOptions
	Authorization  *genericoptions.DelegatingAuthorizationOptions
	// CertPEM and KeyPEM, when set, are the serving certificate (the
	// operator's own, whose CA the APIService trusts); otherwise
	// --tls-cert-file or a self-signed one.
	CertPEM, KeyPEM []byte
}

// DefaultPort is where the operator serves its API.
const DefaultPort = 8443

// NewOptions returns the defaults.
func NewOptions() *Options {
	ss := genericoptions.NewSecureServingOptions()
	ss.BindPort = DefaultPort
	ss.ServerCert.CertDirectory = ""
	ss.ServerCert.PairName = "tether-operator"
	return &Options{
		SecureServing:  ss.WithLoopback(),
		Authentication: genericoptions.NewDelegatingAuthenticationOptions(),
		Authorization:  genericoptions.NewDelegatingAuthorizationOptions(),
	}
}

// AddFlags adds the options' flags (--tls-cert-file, --authentication-kubeconfig...).
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.SecureServing.AddFlags(fs)
	o.Authentication.AddFlags(fs)
	o.Authorization.AddFlags(fs)
}

// Config builds the server's configuration. Its Authorization.Authorizer
// (SubjectAccessReviews, cached) is also what the operator asks about the
// verbs use, mirror and steal.
func (o *Options) Config() (*genericapiserver.RecommendedConfig, error) {
	if errs := append(append(o.SecureServing.Validate(), o.Authentication.Validate()...), o.Authorization.Validate()...); len(errs) > 0 {
		return nil, fmt.Errorf("invalid options: %v", errs)
	}
	if len(o.CertPEM) > 0 {
		cert, err := dynamiccertificates.NewStaticCertKeyContent("tether-operator", o.CertPEM, o.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("the serving certificate: %w", err)
		}
		o.SecureServing.ServerCert.GeneratedCert = cert
	} else if err := o.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("making a self-signed certificate: %w", err)
	}
	c := genericapiserver.NewRecommendedConfig(Codecs)
	if err := o.SecureServing.ApplyTo(&c.SecureServing, &c.LoopbackClientConfig); err != nil {
		return nil, fmt.Errorf("serving: %w", err)
	}
	if err := o.Authentication.ApplyTo(&c.Authentication, c.SecureServing, nil); err != nil {
		return nil, fmt.Errorf("delegated authentication: %w", err)
	}
	if err := o.Authorization.ApplyTo(&c.Authorization); err != nil {
		return nil, fmt.Errorf("delegated authorization: %w", err)
	}
	c.EffectiveVersion = compatibility.NewEffectiveVersionFromString(baseversion.DefaultKubeBinaryVersion, "", "")
	namer := openapinamer.NewDefinitionNamer(Scheme)
	c.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(openapi.GetOpenAPIDefinitions, namer)
	c.OpenAPIConfig.Info.Title, c.OpenAPIConfig.Info.Version = "tether", v1alpha1.SchemeGroupVersion.Version
	c.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(openapi.GetOpenAPIDefinitions, namer)
	c.OpenAPIV3Config.Info.Title, c.OpenAPIV3Config.Info.Version = "tether", v1alpha1.SchemeGroupVersion.Version
	// A session's stream lasts as long as the session: no request timeout.
	c.LongRunningFunc = genericfilters.BasicLongRunningRequestCheck(sets.NewString("watch"), sets.NewString(v1alpha1.SubresourceConnect))
	return c, nil
}

// New builds the API server over b.
func New(c *genericapiserver.RecommendedConfig, b Backend) (*genericapiserver.GenericAPIServer, error) {
	s, err := c.Complete().New("tether-operator", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, fmt.Errorf("building the API server: %w", err)
	}
	info := genericapiserver.NewDefaultAPIGroupInfo(v1alpha1.GroupName, Scheme, ParameterCodec, Codecs)
	info.VersionedResourcesStorageMap[v1alpha1.SchemeGroupVersion.Version] = map[string]rest.Storage{
		v1alpha1.ResourceTargets:                                     &targets{b: b},
		v1alpha1.ResourceTargets + "/" + v1alpha1.SubresourceConnect: &connect{b: b},
		v1alpha1.ResourceTargets + "/" + v1alpha1.SubresourceSplit:   &split{b: b},
		v1alpha1.ResourceTargets + "/" + v1alpha1.SubresourcePolicy:  &policy{b: b},
		v1alpha1.ResourceSessions:                                    &sessions{b: b},
	}
	if err := s.InstallAPIGroup(&info); err != nil {
		return nil, fmt.Errorf("installing %s: %w", v1alpha1.GroupName, err)
	}
	return s, nil
}
