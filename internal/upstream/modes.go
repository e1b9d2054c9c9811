package upstream

// TLSMode says how a session to the provider is secured (accounts.json and
// config.json "smtp_tls"; config parses the key into it).
type TLSMode string

const (
	TLSStartTLS TLSMode = "starttls" // default: plain connect, then STARTTLS
	TLSImplicit TLSMode = "tls"      // TLS from the first byte (port 465 style)
	TLSNone     TLSMode = "none"     // cleartext; refused unless the host is loopback
)

// Mechanism is the SASL mechanism Auth uses ("auth_mechanism").
type Mechanism string

const (
	MechXOAUTH2     Mechanism = "XOAUTH2" // default
	MechOAUTHBEARER Mechanism = "OAUTHBEARER"
)
