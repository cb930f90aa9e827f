package ecrtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

const getAuthorizationTokenTarget = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"

// serveECR implements ECR's GetAuthorizationToken (AWS JSON 1.1).
func (e *Emulator) serveECR(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	if target == getAuthorizationTokenTarget {
		e.count(KindTokenMint)
	} else {
		e.count(KindAPIOther)
	}
	body, err := readBody(r)
	if err != nil {
		writeECRError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	id, fail := e.verifySigV4(r.Context(), r, body, "ecr")
	switch fail {
	case sigMissing:
		writeECRError(w, http.StatusBadRequest, "MissingAuthenticationTokenException", "Missing Authentication Token")
		return
	case sigUnknownKey:
		writeECRError(w, http.StatusBadRequest, "UnrecognizedClientException", "The security token included in the request is invalid.")
		return
	case sigBadScope:
		writeECRError(w, http.StatusBadRequest, "InvalidSignatureException", fmt.Sprintf("Credential should be scoped to a valid region and to service 'ecr'; this endpoint serves '%s'.", e.cfg.region))
		return
	case sigMismatch:
		writeECRError(w, http.StatusBadRequest, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
		return
	}
	if target != getAuthorizationTokenTarget {
		writeECRError(w, http.StatusBadRequest, "UnknownOperationException", "")
		return
	}

	e.mu.Lock()
	throttled := takeFault(&e.throttleMints)
	denied := !throttled && (takeFault(&e.denyMints) || !e.mayMint(id))
	e.mu.Unlock()
	if throttled {
		writeECRError(w, http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
		return
	}
	if denied {
		writeECRError(w, http.StatusBadRequest, "AccessDeniedException", fmt.Sprintf(
			"User: %s is not authorized to perform: ecr:GetAuthorizationToken on resource: * because no identity-based policy allows the ecr:GetAuthorizationToken action", id.arn))
		return
	}

	var in struct {
		RegistryIDs []string `json:"registryIds"`
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			writeECRError(w, http.StatusBadRequest, "SerializationException", "Start of structure or map found where not expected.")
			return
		}
	}
	if len(in.RegistryIDs) > 10 {
		writeECRError(w, http.StatusBadRequest, "InvalidParameterException", "registryIds must contain at most 10 items")
		return
	}
	for _, rid := range in.RegistryIDs {
		if !accountIDPattern.MatchString(rid) {
			writeECRError(w, http.StatusBadRequest, "InvalidParameterException", fmt.Sprintf("Invalid parameter at 'registryIds' failed to satisfy constraint: 'must satisfy regular expression pattern: [0-9]{12}' (%q)", rid))
			return
		}
	}

	password, expiresAt, err := e.mint()
	if err != nil {
		writeECRError(w, http.StatusInternalServerError, "ServerException", err.Error())
		return
	}
	token := base64.StdEncoding.EncodeToString([]byte("AWS:" + password))
	expires := strconv.FormatFloat(float64(expiresAt.UnixMilli())/1000, 'f', 3, 64)
	out := fmt.Sprintf(`{"authorizationData":[{"authorizationToken":%q,"expiresAt":%s,"proxyEndpoint":%q}]}`, token, expires, e.RegistryURL())
	writeAWSJSON(w, http.StatusOK, []byte(out))
}

func writeAWSJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", newRequestID())
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeECRError writes an AWS JSON 1.1 error: {"__type":…,"message":…}.
func writeECRError(w http.ResponseWriter, status int, typ, message string) {
	body, _ := json.Marshal(struct {
		Type    string `json:"__type"`
		Message string `json:"message,omitempty"`
	}{typ, message})
	writeAWSJSON(w, status, body)
}
