-- Exports upstream X-Road's operational monitoring database (PostgreSQL,
-- table operational_data) as JSON Lines for `opmond import`: one record per
-- line, upstream's camelCase field names, null columns left out, oldest
-- first. Run it with psql against the op-monitor database, e.g. on the host
-- of upstream's daemon:
--
--   sudo -u postgres psql -X -d op-monitor -f migrate-from-upstream.sql -o operational_data.jsonl
--   opmond import --config /etc/opmond/opmond.toml operational_data.jsonl
--
-- or straight into a running opmond without a file in between:
--
--   sudo -u postgres psql -X -d op-monitor -f migrate-from-upstream.sql | opmond import -
--
-- Each record keeps its monitoringDataTs. Records older than opmond's
-- keep-records-for-days are stored and then removed by its next purge.

-- Bare output: no alignment, headers, row counts or command tags.
\set QUIET on
\set ON_ERROR_STOP on
\pset format unaligned
\pset tuples_only on
\pset pager off
-- Fetch in batches through a cursor instead of holding the whole table in
-- psql's memory.
\set FETCH_COUNT 10000

SELECT json_strip_nulls(json_build_object(
    'monitoringDataTs', monitoring_data_ts,
    'securityServerInternalIp', security_server_internal_ip,
    'securityServerType', security_server_type,
    'requestInTs', request_in_ts,
    'requestOutTs', request_out_ts,
    'responseInTs', response_in_ts,
    'responseOutTs', response_out_ts,
    'clientXRoadInstance', client_xroad_instance,
    'clientMemberClass', client_member_class,
    'clientMemberCode', client_member_code,
    'clientSubsystemCode', client_subsystem_code,
    'serviceXRoadInstance', service_xroad_instance,
    'serviceMemberClass', service_member_class,
    'serviceMemberCode', service_member_code,
    'serviceSubsystemCode', service_subsystem_code,
    'serviceCode', service_code,
    'restMethod', rest_method,
    'restPath', rest_path,
    'xRoadVersion', xroad_version,
    'serviceVersion', service_version,
    'representedPartyClass', represented_party_class,
    'representedPartyCode', represented_party_code,
    'messageId', message_id,
    'messageUserId', message_user_id,
    'messageIssue', message_issue,
    'messageProtocolVersion', message_protocol_version,
    'clientSecurityServerAddress', client_security_server_address,
    'serviceSecurityServerAddress', service_security_server_address,
    'requestSize', request_size,
    'responseSize', response_size,
    'requestMimeSize', request_mime_size,
    'requestAttachmentCount', request_attachment_count,
    'responseMimeSize', response_mime_size,
    'responseAttachmentCount', response_attachment_count,
    'succeeded', succeeded,
    'faultCode', fault_code,
    'faultString', fault_string,
    'xRequestId', x_request_id,
    'statusCode', status_code,
    'serviceType', service_type
))
FROM operational_data
ORDER BY monitoring_data_ts, id;
