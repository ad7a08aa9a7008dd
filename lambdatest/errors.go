package lambdatest

import (
	"encoding/json"
	"net/http"
)

// Error codes the server answers on its own (faults may use any code).
const (
	codeValidation      = "ValidationException"
	codeInvalidParam    = "InvalidParameterValueException"
	codeInvalidContent  = "InvalidRequestContentException"
	codeNotFound        = "ResourceNotFoundException"
	codeTooLarge        = "RequestEntityTooLargeException"
	codeUnknownOp       = "UnknownOperationException"
	codeTooManyRequests = "TooManyRequestsException"
	codeService         = "ServiceException"
)

// lambdaStatus is the HTTP status Lambda answers with each error code of the
// Invoke operation (from the API reference).
var lambdaStatus = map[string]int{
	"DurableExecutionAlreadyStartedException":  409,
	"EC2AccessDeniedException":                 502,
	"EC2ThrottledException":                    502,
	"EC2UnexpectedException":                   502,
	"EFSIOException":                           410,
	"EFSMountConnectivityException":            408,
	"EFSMountFailureException":                 403,
	"EFSMountTimeoutException":                 408,
	"ENILimitReachedException":                 502,
	codeInvalidParam:                           400,
	codeInvalidContent:                         400,
	"InvalidRuntimeException":                  502,
	"InvalidSecurityGroupIDException":          502,
	"InvalidSubnetIDException":                 502,
	"InvalidZipFileException":                  502,
	"KMSAccessDeniedException":                 502,
	"KMSDisabledException":                     502,
	"KMSInvalidStateException":                 502,
	"KMSNotFoundException":                     502,
	"NoPublishedVersionException":              400,
	"RecursiveInvocationException":             400,
	codeTooLarge:                               413,
	"RequestTooLargeException":                 413,
	"ResourceConflictException":                409,
	codeNotFound:                               404,
	"ResourceNotReadyException":                502,
	"SerializedRequestEntityTooLargeException": 413,
	codeService:                                500,
	"SnapStartException":                       400,
	"SnapStartNotReadyException":               409,
	"SnapStartTimeoutException":                408,
	"SubnetIPAddressLimitReachedException":     502,
	codeTooManyRequests:                        429,
	"UnsupportedMediaTypeException":            415,
	codeValidation:                             400,
	"UnrecognizedClientException":              403,
	"InvalidSignatureException":                403,
	"AccessDeniedException":                    403,
	"ExpiredTokenException":                    403,
}

// statusForCode returns the status Lambda uses for code, or 500.
func statusForCode(code string) int {
	if st, ok := lambdaStatus[code]; ok {
		return st
	}
	return http.StatusInternalServerError
}

// codeForStatus returns an error code typical of an HTTP status.
func codeForStatus(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return codeTooManyRequests
	case status == http.StatusNotFound:
		return codeNotFound
	case status == http.StatusRequestEntityTooLarge:
		return codeTooLarge
	case status == http.StatusUnsupportedMediaType:
		return "UnsupportedMediaTypeException"
	case status == http.StatusConflict:
		return "ResourceConflictException"
	case status == http.StatusForbidden:
		return "AccessDeniedException"
	case status >= 500:
		return codeService
	case status >= 400:
		return codeInvalidParam
	default:
		return "UnknownError"
	}
}

// defaultMessage returns the message of a fault that did not set one.
func defaultMessage(code string) string {
	switch code {
	case codeTooManyRequests:
		return "Rate Exceeded."
	case codeService:
		return "Lambda was unable to process the request due to an internal error."
	}
	return "lambdatest: scripted " + code
}

// errorBody encodes Lambda's JSON error body. Lambda writes the message key
// as "message" for some errors and "Message" for others; the SDK accepts
// either, so the server always writes "message".
func errorBody(status int, message, reason string) []byte {
	typ := "User"
	if status >= 500 {
		typ = "Service"
	}
	b := make([]byte, 0, 48+len(message)+len(reason))
	b = append(b, `{"Type":"`...)
	b = append(b, typ...)
	b = append(b, `","message":`...)
	b = appendJSONString(b, message)
	if reason != "" {
		b = append(b, `,"Reason":`...)
		b = appendJSONString(b, reason)
	}
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	enc, err := json.Marshal(s)
	if err != nil { // cannot happen for a string
		return append(b, `""`...)
	}
	return append(b, enc...)
}

// Header values shared by every answer; net/http only reads them.
var (
	hdrJSON      = []string{"application/json"}
	hdrUnhandled = []string{"Unhandled"}
	hdrLatest    = []string{"$LATEST"}
)

// writeAPIError answers an error of the service.
func writeAPIError(w http.ResponseWriter, status int, code, message string) {
	writeErrorBody(w, status, []string{code}, nil, errorBody(status, message, ""))
}

// writeErrorBody answers an error with a prepared body.
func writeErrorBody(w http.ResponseWriter, status int, code, retryAfter []string, body []byte) {
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["X-Amzn-Errortype"] = code
	if retryAfter != nil {
		h["Retry-After"] = retryAfter
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// functionErrorBody encodes the body of an unhandled function error.
func functionErrorBody(err error) []byte {
	b, _ := json.Marshal(struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
	}{err.Error(), errorType(err)})
	return b
}
