{{/*
Names, labels and the pieces every component's pod shares.
*/}}

{{- define "affiliate-platform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name (truncated to 63: it prefixes every object's name). */}}
{{- define "affiliate-platform.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "affiliate-platform.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* A component's object name: <fullname>-<component>, e.g. affiliate-platform-campaign. */}}
{{- define "affiliate-platform.componentName" -}}
{{- printf "%s-%s" (include "affiliate-platform.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "affiliate-platform.labels" -}}
helm.sh/chart: {{ include "affiliate-platform.chart" . }}
app.kubernetes.io/name: {{ include "affiliate-platform.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: affiliate-platform
{{- end }}

{{/* Labels of a component's objects: call with (dict "root" $ "component" "campaign"). */}}
{{- define "affiliate-platform.componentLabels" -}}
{{ include "affiliate-platform.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of a component (stable across upgrades: never add to them). */}}
{{- define "affiliate-platform.selectorLabels" -}}
app.kubernetes.io/name: {{ include "affiliate-platform.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "affiliate-platform.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "affiliate-platform.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "affiliate-platform.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding database URLs and tokens: yours (secrets.existingSecret) or the chart's. */}}
{{- define "affiliate-platform.secretName" -}}
{{- default (include "affiliate-platform.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The services the chart runs, in a fixed order, each with its values merged over serviceDefaults. */}}
{{- define "affiliate-platform.serviceNames" -}}
campaign tracking commission payment notification analytics webhook
{{- end }}

{{- define "affiliate-platform.serviceValues" -}}
{{- $own := index .root.Values.services .component | default dict }}
{{- mergeOverwrite (deepCopy .root.Values.serviceDefaults) (deepCopy $own) | toYaml }}
{{- end }}

{{/* Where the Pulsar CA and tokens are mounted (files: the processes read them, never env). */}}
{{- define "affiliate-platform.pulsarCaFile" -}}
/etc/affiliate-platform/pulsar-ca/{{ .Values.pulsar.tls.ca.key }}
{{- end }}
{{- define "affiliate-platform.pulsarTokenFile" -}}
/var/run/secrets/affiliate-platform/pulsar-token/token
{{- end }}
{{- define "affiliate-platform.pulsarOAuth2File" -}}
/var/run/secrets/affiliate-platform/pulsar-oauth2/credentials.json
{{- end }}
{{- define "affiliate-platform.pulsarAdminTokenFile" -}}
/var/run/secrets/affiliate-platform/pulsar-admin-token/token
{{- end }}

{{- define "affiliate-platform.pulsarCaEnabled" -}}
{{- if or .Values.pulsar.tls.ca.secretName .Values.pulsar.tls.ca.configMapName }}true{{ end }}
{{- end }}

{{/*
ConfigMap entries every process that talks to Pulsar's binary protocol shares.
*/}}
{{- define "affiliate-platform.pulsarClientEnv" -}}
PULSAR_URL: {{ .Values.pulsar.serviceUrl | quote }}
PULSAR_TENANT: {{ .Values.pulsar.tenant | quote }}
PULSAR_NAMESPACE: {{ .Values.pulsar.namespace | quote }}
PULSAR_CONNECT_TIMEOUT: {{ .Values.pulsar.connectTimeout | quote }}
{{- if include "affiliate-platform.pulsarCaEnabled" . }}
PULSAR_TLS_CA_FILE: {{ include "affiliate-platform.pulsarCaFile" . | quote }}
{{- end }}
{{- if .Values.pulsar.auth.token.enabled }}
PULSAR_TOKEN_FILE: {{ include "affiliate-platform.pulsarTokenFile" . | quote }}
{{- end }}
{{- with .Values.pulsar.auth.oauth2 }}
{{- if .enabled }}
{{- if $.Values.pulsar.auth.token.enabled }}
{{- fail "pulsar.auth.token and pulsar.auth.oauth2 are both enabled: choose one" }}
{{- end }}
PULSAR_OAUTH2_ISSUER_URL: {{ required "pulsar.auth.oauth2.issuerUrl is required when OAuth2 is enabled" .issuerUrl | quote }}
PULSAR_OAUTH2_CREDENTIALS_FILE: {{ include "affiliate-platform.pulsarOAuth2File" $ | quote }}
{{- with .audience }}
PULSAR_OAUTH2_AUDIENCE: {{ . | quote }}
{{- end }}
{{- with .scope }}
PULSAR_OAUTH2_SCOPE: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* ConfigMap entries of logs, traces and metrics, for every process. */}}
{{- define "affiliate-platform.telemetryEnv" -}}
RUST_LOG: {{ .Values.log.filter | quote }}
LOG_FORMAT: {{ .Values.log.format | quote }}
METRICS_LISTEN: {{ printf "0.0.0.0:%v" .Values.metrics.port | quote }}
{{- with .Values.tracing.otlpEndpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
{{- end }}

{{/* Extra env entries (a NAME: value map) as ConfigMap data. */}}
{{- define "affiliate-platform.extraEnv" -}}
{{- range $name, $value := . }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* Pod-level pieces: call with (dict "root" $ "component" "campaign"). */}}
{{- define "affiliate-platform.podAnnotations" -}}
{{- with .root.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- if .root.Values.metrics.annotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .root.Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{- define "affiliate-platform.podSpecCommon" -}}
{{- $root := .root }}
serviceAccountName: {{ include "affiliate-platform.serviceAccountName" $root }}
automountServiceAccountToken: {{ $root.Values.automountServiceAccountToken }}
# No <SERVICE>_PORT variables for every Service in the namespace: the processes read their
# configuration from the environment, and a Service's name must never become one of it.
enableServiceLinks: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ $root.Values.topologySpread.maxSkew }}
    topologyKey: {{ $root.Values.topologySpread.topologyKey }}
    whenUnsatisfiable: {{ $root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "affiliate-platform.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end }}

{{/* Volumes for /tmp and the Pulsar files; with (dict "root" $ "admin" true) the BFF's admin token. */}}
{{- define "affiliate-platform.volumes" -}}
{{- $root := .root }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- with $root.Values.pulsar.tls.ca }}
{{- if .secretName }}
- name: pulsar-ca
  secret:
    secretName: {{ .secretName }}
    items:
      - key: {{ .key }}
        path: {{ .key }}
{{- else if .configMapName }}
- name: pulsar-ca
  configMap:
    name: {{ .configMapName }}
    items:
      - key: {{ .key }}
        path: {{ .key }}
{{- end }}
{{- end }}
{{- if and (not .admin) $root.Values.pulsar.auth.token.enabled }}
- name: pulsar-token
  secret:
    secretName: {{ default (include "affiliate-platform.secretName" $root) $root.Values.pulsar.auth.token.secretName }}
    items:
      - key: {{ $root.Values.pulsar.auth.token.key }}
        path: token
{{- end }}
{{- if and (not .admin) $root.Values.pulsar.auth.oauth2.enabled }}
- name: pulsar-oauth2
  secret:
    secretName: {{ required "pulsar.auth.oauth2.secretName is required when OAuth2 is enabled" $root.Values.pulsar.auth.oauth2.secretName }}
    items:
      - key: {{ $root.Values.pulsar.auth.oauth2.key }}
        path: credentials.json
{{- end }}
{{- if .admin }}
{{- $t := include "affiliate-platform.bffAdminToken" $root | fromYaml }}
{{- if $t.enabled }}
- name: pulsar-admin-token
  secret:
    secretName: {{ $t.secretName }}
    items:
      - key: {{ $t.key }}
        path: token
{{- end }}
{{- end }}
{{- end }}

{{/* Where the volumes above are mounted (directories, not subPath: the kubelet then updates rotated files). */}}
{{- define "affiliate-platform.volumeMounts" -}}
{{- $root := .root }}
- name: tmp
  mountPath: /tmp
{{- if include "affiliate-platform.pulsarCaEnabled" $root }}
- name: pulsar-ca
  mountPath: /etc/affiliate-platform/pulsar-ca
  readOnly: true
{{- end }}
{{- if and (not .admin) $root.Values.pulsar.auth.token.enabled }}
- name: pulsar-token
  mountPath: /var/run/secrets/affiliate-platform/pulsar-token
  readOnly: true
{{- end }}
{{- if and (not .admin) $root.Values.pulsar.auth.oauth2.enabled }}
- name: pulsar-oauth2
  mountPath: /var/run/secrets/affiliate-platform/pulsar-oauth2
  readOnly: true
{{- end }}
{{- if .admin }}
{{- $t := include "affiliate-platform.bffAdminToken" $root | fromYaml }}
{{- if $t.enabled }}
- name: pulsar-admin-token
  mountPath: /var/run/secrets/affiliate-platform/pulsar-admin-token
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* The token the BFF reads the admin API with: the admin token when enabled, else the platform's. */}}
{{- define "affiliate-platform.bffAdminToken" -}}
{{- $auth := .Values.pulsar.auth }}
{{- if $auth.adminToken.enabled }}
enabled: true
secretName: {{ default (include "affiliate-platform.secretName" .) $auth.adminToken.secretName }}
key: {{ $auth.adminToken.key }}
{{- else if $auth.token.enabled }}
enabled: true
secretName: {{ default (include "affiliate-platform.secretName" .) $auth.token.secretName }}
key: {{ $auth.token.key }}
{{- else }}
enabled: false
{{- end }}
{{- end }}

{{/* Checks of values the templates cannot express in the schema. */}}
{{- define "affiliate-platform.validate" -}}
{{- $jwt := .Values.bff.jwt }}
{{- $sources := 0 }}
{{- if $jwt.jwksUrl }}{{ $sources = add1 $sources }}{{ end }}
{{- if $jwt.jwksConfigMap.name }}{{ $sources = add1 $sources }}{{ end }}
{{- if $jwt.hs256 }}{{ $sources = add1 $sources }}{{ end }}
{{- if ne (int $sources) 1 }}
{{- fail "bff.jwt: set exactly one token key source: jwksUrl, jwksConfigMap.name, or hs256 (development)" }}
{{- end }}
{{- if and .Values.pulsar.tls.ca.secretName .Values.pulsar.tls.ca.configMapName }}
{{- fail "pulsar.tls.ca: name a Secret or a ConfigMap, not both" }}
{{- end }}
{{- if not .Values.secrets.existingSecret }}
{{- range $svc := splitList " " (include "affiliate-platform.serviceNames" .) }}
{{- if not (index $.Values.secrets.databaseUrls $svc) }}
{{- fail (printf "secrets.databaseUrls.%s is empty (or set secrets.existingSecret)" $svc) }}
{{- end }}
{{- end }}
{{- if and .Values.pulsar.auth.token.enabled (not .Values.pulsar.auth.token.secretName) (not .Values.secrets.pulsarToken) }}
{{- fail "pulsar.auth.token is enabled: set secrets.pulsarToken, pulsar.auth.token.secretName, or secrets.existingSecret" }}
{{- end }}
{{- if and .Values.pulsar.auth.adminToken.enabled (not .Values.pulsar.auth.adminToken.secretName) (not .Values.secrets.pulsarAdminToken) }}
{{- fail "pulsar.auth.adminToken is enabled: set secrets.pulsarAdminToken, pulsar.auth.adminToken.secretName, or secrets.existingSecret" }}
{{- end }}
{{- end }}
{{- range $svc := .Values.relay.outboxes }}
{{- if not (has $svc (splitList " " (include "affiliate-platform.serviceNames" $))) }}
{{- fail (printf "relay.outboxes: %q is not one of the services" $svc) }}
{{- end }}
{{- end }}
{{- end }}
