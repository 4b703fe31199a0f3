{{- define "sidx.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sidx.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "sidx.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sidx.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ include "sidx.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "index") */}}
{{- define "sidx.selector" -}}
app.kubernetes.io/name: {{ include "sidx.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sidx.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "sidx.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sidx.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sidx.indexClaim" -}}
{{- default (printf "%s-index" (include "sidx.fullname" .)) .Values.index.storage.existingClaim -}}
{{- end -}}

{{/* Flags both `sidx serve index` and `sidx serve generator` take. */}}
{{- define "sidx.serverArgs" -}}
- --addr
- "0.0.0.0:{{ .Values.ports.grpc }}"
- --metrics-addr
- "0.0.0.0:{{ .Values.ports.metrics }}"
- --config
- /etc/sidx/sidx.toml
{{- if .Values.tls.enabled }}
- --tls-cert
- /etc/sidx/tls/tls.crt
- --tls-key
- /etc/sidx/tls/tls.key
{{- if .Values.tls.requireClientCert }}
- --tls-client-ca
- /etc/sidx/tls/ca.crt
{{- end }}
{{- end }}
{{- end -}}

{{/* Startup, readiness and liveness probes of one service: (dict "root" $ "service" "sidx.v1.IndexService") */}}
{{- define "sidx.probes" -}}
{{- $v := .root.Values -}}
{{- if $v.tls.enabled }}
startupProbe:
  httpGet: {path: /ready, port: metrics}
  periodSeconds: 5
  failureThreshold: 120
readinessProbe:
  httpGet: {path: /ready, port: metrics}
  periodSeconds: 5
livenessProbe:
  tcpSocket: {port: grpc}
  periodSeconds: 10
  failureThreshold: 3
{{- else }}
startupProbe:
  grpc: {port: {{ $v.ports.grpc }}, service: {{ .service }}}
  periodSeconds: 5
  failureThreshold: 120
readinessProbe:
  grpc: {port: {{ $v.ports.grpc }}, service: {{ .service }}}
  periodSeconds: 5
livenessProbe:
  # The process accepts connections. Not gRPC health: the server answers
  # NOT_SERVING — for the service and for the whole server ("") alike — until
  # an index is loaded, and a pod briefly without one is taken out of
  # rotation by readiness, not restarted.
  tcpSocket: {port: grpc}
  periodSeconds: 10
  failureThreshold: 3
{{- end }}
{{- end -}}

{{- define "sidx.ports" -}}
ports:
  - name: grpc
    containerPort: {{ .Values.ports.grpc }}
    protocol: TCP
  - name: metrics
    containerPort: {{ .Values.ports.metrics }}
    protocol: TCP
{{- end -}}

{{- define "sidx.lifecycle" -}}
lifecycle:
  preStop:
    sleep:
      seconds: {{ .Values.preStopSleepS }}
{{- end -}}

{{- define "sidx.gracePeriod" -}}
{{- add .Values.server.drainTimeoutS .Values.preStopSleepS .Values.terminationExtraS -}}
{{- end -}}

{{- define "sidx.commonVolumes" -}}
- name: config
  configMap:
    name: {{ include "sidx.fullname" . }}
- name: tmp
  emptyDir: {}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
{{- end }}
{{- end -}}

{{- define "sidx.commonMounts" -}}
- name: config
  mountPath: /etc/sidx/sidx.toml
  subPath: sidx.toml
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/sidx/tls
  readOnly: true
{{- end }}
{{- end -}}
