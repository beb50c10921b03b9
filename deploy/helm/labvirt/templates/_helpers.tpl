{{/* The release's full name, at most 63 characters (a DNS label). */}}
{{- define "labvirt.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* A component's name: <fullname>-<suffix>, at most 63 characters. */}}
{{- define "labvirt.componentName" -}}
{{- printf "%s-%s" (include "labvirt.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix -}}
{{- end -}}

{{/* labvirt's pods. Env NetworkPolicies let pods with these labels reach VMs on port 22. */}}
{{- define "labvirt.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The orchestrator's pods (API, workers, schedules, sync): they hold labvirt's Kubernetes rights. */}}
{{- define "labvirt.orchestratorSelectorLabels" -}}
{{ include "labvirt.selectorLabels" . }}
app.kubernetes.io/component: orchestrator
{{- end -}}

{{/* The SSH gateway's pods: no Kubernetes rights at all. */}}
{{- define "labvirt.gatewaySelectorLabels" -}}
{{ include "labvirt.selectorLabels" . }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "labvirt.gatewayName" -}}
{{- include "labvirt.componentName" (dict "root" . "suffix" "gateway") -}}
{{- end -}}

{{/* The Secret holding the bundled Redis's password and labvirt's URL for it. */}}
{{- define "labvirt.redisSecretName" -}}
{{- include "labvirt.componentName" (dict "root" . "suffix" "redis-auth") -}}
{{- end -}}

{{- define "labvirt.labels" -}}
{{ include "labvirt.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: labvirt
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "labvirt.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "labvirt.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The ClusterRole labvirt binds into each env Namespace (kube.envClusterRole). */}}
{{- define "labvirt.envRoleName" -}}
{{- include "labvirt.componentName" (dict "root" . "suffix" "env") -}}
{{- end -}}

{{/* The env Namespaces' prefix (namespacePrefix), as labvirt reads it. */}}
{{- define "labvirt.namespacePrefix" -}}
{{- .Values.config.namespacePrefix | default "lab-" -}}
{{- end -}}

{{- define "labvirt.secretName" -}}
{{- default (include "labvirt.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* True (non-empty) when the chart runs its own Redis. */}}
{{- define "labvirt.bundledRedis" -}}
{{- if and (not .Values.redis.url) (not .Values.redis.urlSecret.name) -}}true{{- end -}}
{{- end -}}

{{- define "labvirt.redisName" -}}
{{- include "labvirt.componentName" (dict "root" . "suffix" "redis") -}}
{{- end -}}

{{/*
labvirt.yaml: what the chart owns (where Redis is, the listeners, the key
Secrets, labvirt's own namespace and pod labels) under the operator's
`config`, which wins where both set a key.
*/}}
{{- define "labvirt.config" -}}
{{- $owned := dict
  "api" (dict "host" "0.0.0.0" "port" (int .Values.api.containerPort))
  "ssh" (dict
    "gatewayPort" (int .Values.gateway.containerPort)
    "bindAddress" "0.0.0.0"
    "hostKey" (printf "secret:%s/%s" .Release.Namespace (include "labvirt.componentName" (dict "root" . "suffix" "gateway-host-key")))
    "orchestratorKey" (printf "secret:%s/%s" .Release.Namespace (include "labvirt.componentName" (dict "root" . "suffix" "orchestrator-key")))
    "gatewayClientKey" (printf "secret:%s/%s" .Release.Namespace (include "labvirt.componentName" (dict "root" . "suffix" "gateway-client-key"))))
  "kube" (dict "envClusterRole" (include "labvirt.envRoleName" .))
  "network" (dict
    "gatewayNamespace" .Release.Namespace
    "gatewayPodLabels" (include "labvirt.selectorLabels" . | fromYaml))
-}}
{{- if .Values.redis.url -}}
{{- $_ := set $owned "redis" (dict "url" .Values.redis.url) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $owned (deepCopy .Values.config)) -}}
{{- end -}}

{{/*
The labvirt pods' terminationGracePeriodSeconds: labvirt's own shutdown
grace (pool.shutdownGraceSeconds, default 30) plus 20 s to hand the running
jobs back and close the API, Redis and the rest (labvirt itself gives up on
a part 5 s after the grace). Without the margin the kubelet's SIGKILL lands
before the hand-back, and the jobs wait for BullMQ's stalled-job check.
*/}}
{{- define "labvirt.terminationGrace" -}}
{{- $config := include "labvirt.config" . | fromYaml -}}
{{- $pool := $config.pool | default dict -}}
{{- $grace := 30 -}}
{{- if hasKey $pool "shutdownGraceSeconds" -}}
{{- $grace = $pool.shutdownGraceSeconds -}}
{{- end -}}
{{- add $grace 20 -}}
{{- end -}}

{{/*
The gateway's labvirt.yaml: the same, but its two keys are files (the
Secrets the orchestrator made, mounted): the gateway makes no Kubernetes
call. It never reads the web bridge's key (the API role publishes its public
half in Redis).
*/}}
{{- define "labvirt.gatewayConfig" -}}
{{- $config := include "labvirt.config" . | fromYaml -}}
{{- $_ := set $config.ssh "hostKey" "/etc/labvirt/keys/host/ssh-privatekey" -}}
{{- $_ := set $config.ssh "gatewayClientKey" "/etc/labvirt/keys/client/ssh-privatekey" -}}
{{- $_ := unset $config.ssh "orchestratorKey" -}}
{{- toYaml $config -}}
{{- end -}}
