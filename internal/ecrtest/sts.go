package ecrtest

import (
	"encoding/xml"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"
)

const stsNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"

var arnAccountPattern = regexp.MustCompile(`^arn:[^:]+:[^:]+::([0-9]{12}):`)

var roleARNPattern = regexp.MustCompile(`^arn:aws[a-z-]*:iam::([0-9]{12}):role/(?:.*/)?([\w+=,.@-]{1,64})$`)

// serveSTS implements STS' AssumeRoleWithWebIdentity (unsigned),
// AssumeRole and GetCallerIdentity (signed) in the query protocol.
func (e *Emulator) serveSTS(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		e.count(KindAPIOther)
		writeSTSError(w, http.StatusBadRequest, "Sender", "ValidationError", err.Error())
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		e.count(KindAPIOther)
		writeSTSError(w, http.StatusBadRequest, "Sender", "MalformedQueryString", err.Error())
		return
	}
	switch form.Get("Action") {
	case "AssumeRoleWithWebIdentity":
		e.count(KindWebIdentity)
		e.assumeRoleWithWebIdentity(w, form)
	case "GetCallerIdentity":
		e.count(KindCallerIdentity)
		id, ok := e.stsAuth(w, r, body)
		if !ok {
			return
		}
		writeSTSResponse(w, "GetCallerIdentity", struct {
			XMLName xml.Name
			Arn     string `xml:"Arn"`
			UserID  string `xml:"UserId"`
			Account string `xml:"Account"`
		}{xml.Name{Local: "GetCallerIdentityResult"}, id.arn, id.userID, accountOf(id.arn, e.cfg.accountID)})
	case "AssumeRole":
		e.count(KindAssumeRole)
		caller, ok := e.stsAuth(w, r, body)
		if !ok || !e.trustsAssumeRole(w, form, caller) {
			return
		}
		user, creds, ok := e.assumeRole(w, form)
		if !ok {
			return
		}
		writeSTSResponse(w, "AssumeRole", struct {
			XMLName         xml.Name
			AssumedRoleUser assumedRoleUser `xml:"AssumedRoleUser"`
			Credentials     stsCredentials  `xml:"Credentials"`
		}{xml.Name{Local: "AssumeRoleResult"}, user, creds})
	default:
		e.count(KindAPIOther)
		writeSTSError(w, http.StatusBadRequest, "Sender", "InvalidAction", fmt.Sprintf("Could not find operation %s for version 2011-06-15", form.Get("Action")))
	}
}

// stsAuth checks SigV4 for service "sts" and writes STS' error on failure.
func (e *Emulator) stsAuth(w http.ResponseWriter, r *http.Request, body []byte) (identity, bool) {
	id, fail := e.verifySigV4(r.Context(), r, body, "sts")
	switch fail {
	case sigOK:
		return id, true
	case sigMissing:
		writeSTSError(w, http.StatusForbidden, "Sender", "MissingAuthenticationToken", "Request is missing Authentication Token")
	case sigUnknownKey:
		writeSTSError(w, http.StatusForbidden, "Sender", "InvalidClientTokenId", "The security token included in the request is invalid.")
	case sigBadScope:
		writeSTSError(w, http.StatusForbidden, "Sender", "SignatureDoesNotMatch", fmt.Sprintf("Credential should be scoped to a valid region and to service 'sts'; this endpoint serves '%s'.", e.cfg.region))
	default:
		writeSTSError(w, http.StatusForbidden, "Sender", "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
	}
	return identity{}, false
}

func (e *Emulator) assumeRoleWithWebIdentity(w http.ResponseWriter, form url.Values) {
	if form.Get("WebIdentityToken") == "" {
		writeSTSError(w, http.StatusBadRequest, "Sender", "ValidationError", "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must not be null")
		return
	}
	e.mu.Lock()
	denied := takeFault(&e.denyWebIdentity)
	e.mu.Unlock()
	if denied {
		writeSTSError(w, http.StatusBadRequest, "Sender", "InvalidIdentityToken", "Couldn't retrieve verification key from your identity provider")
		return
	}
	user, creds, ok := e.assumeRole(w, form)
	if !ok {
		return
	}
	writeSTSResponse(w, "AssumeRoleWithWebIdentity", struct {
		XMLName         xml.Name
		Subject         string          `xml:"SubjectFromWebIdentityToken"`
		Audience        string          `xml:"Audience"`
		AssumedRoleUser assumedRoleUser `xml:"AssumedRoleUser"`
		Credentials     stsCredentials  `xml:"Credentials"`
		Provider        string          `xml:"Provider"`
	}{
		XMLName:         xml.Name{Local: "AssumeRoleWithWebIdentityResult"},
		Subject:         "system:serviceaccount:ecrtest:ecrtest",
		Audience:        "sts.amazonaws.com",
		AssumedRoleUser: user,
		Credentials:     creds,
		Provider:        fmt.Sprintf("arn:aws:iam::%s:oidc-provider/oidc.ecrtest.invalid", e.cfg.accountID),
	})
}

type assumedRoleUser struct {
	Arn           string `xml:"Arn"`
	AssumedRoleID string `xml:"AssumedRoleId"`
}

type stsCredentials struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	SessionToken    string `xml:"SessionToken"`
	Expiration      string `xml:"Expiration"`
}

// assumeRole issues temporary credentials for RoleArn/RoleSessionName; on
// failure it writes STS' error and returns false.
func (e *Emulator) assumeRole(w http.ResponseWriter, form url.Values) (assumedRoleUser, stsCredentials, bool) {
	m := roleARNPattern.FindStringSubmatch(form.Get("RoleArn"))
	if m == nil {
		writeSTSError(w, http.StatusBadRequest, "Sender", "ValidationError", fmt.Sprintf("%s is invalid", form.Get("RoleArn")))
		return assumedRoleUser{}, stsCredentials{}, false
	}
	session := form.Get("RoleSessionName")
	if session == "" {
		writeSTSError(w, http.StatusBadRequest, "Sender", "ValidationError", "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint: Member must not be null")
		return assumedRoleUser{}, stsCredentials{}, false
	}
	lifetime := e.cfg.credsLifetime
	if d := form.Get("DurationSeconds"); d != "" {
		secs, err := strconv.Atoi(d)
		if err != nil || secs < 900 || secs > 43200 {
			writeSTSError(w, http.StatusBadRequest, "Sender", "ValidationError", "DurationSeconds must be between 900 and 43200")
			return assumedRoleUser{}, stsCredentials{}, false
		}
		lifetime = time.Duration(secs) * time.Second
	}
	account, role := m[1], m[2]
	arn := fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", account, role, session)
	c, err := e.issueCredentials(arn, roleUserID(role, session), lifetime)
	if err != nil {
		writeSTSError(w, http.StatusInternalServerError, "Receiver", "InternalFailure", err.Error())
		return assumedRoleUser{}, stsCredentials{}, false
	}
	return assumedRoleUser{Arn: arn, AssumedRoleID: c.UserID},
		stsCredentials{c.AccessKeyID, c.SecretAccessKey, c.SessionToken, c.Expiration.Format(time.RFC3339)}, true
}

// roleUserID is a stable AROA… role ID plus the session name.
func roleUserID(role, session string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(role))
	return fmt.Sprintf("AROA%016X:%s", h.Sum64(), session)
}

// writeSTSResponse writes <action>Response> around result, whose XMLName
// must be <action>Result.
func writeSTSResponse(w http.ResponseWriter, action string, result any) {
	type metadata struct {
		RequestID string `xml:"RequestId"`
	}
	writeXML(w, http.StatusOK, struct {
		XMLName  xml.Name
		Xmlns    string   `xml:"xmlns,attr"`
		Result   any      `xml:""`
		Metadata metadata `xml:"ResponseMetadata"`
	}{
		XMLName:  xml.Name{Local: action + "Response"},
		Xmlns:    stsNamespace,
		Result:   result,
		Metadata: metadata{RequestID: newRequestID()},
	})
}

// accountOf extracts the account from an ARN, or returns def.
func accountOf(arn, def string) string {
	if m := arnAccountPattern.FindStringSubmatch(arn); m != nil {
		return m[1]
	}
	return def
}

func writeSTSError(w http.ResponseWriter, status int, typ, code, message string) {
	type stsError struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	writeXML(w, status, struct {
		XMLName   xml.Name `xml:"ErrorResponse"`
		Xmlns     string   `xml:"xmlns,attr"`
		Error     stsError `xml:"Error"`
		RequestID string   `xml:"RequestId"`
	}{Xmlns: stsNamespace, Error: stsError{typ, code, message}, RequestID: newRequestID()})
}

func writeXML(w http.ResponseWriter, status int, v any) {
	body, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
