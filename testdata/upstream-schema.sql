-- The operational_data table as upstream X-Road's liquibase changelogs
-- (op-monitor-db, 0-initial.xml to 9-add-indexes.xml) leave it.
CREATE SEQUENCE hibernate_sequence;
CREATE TABLE operational_data (
    id BIGINT NOT NULL,
    monitoring_data_ts BIGINT NOT NULL,
    security_server_internal_ip VARCHAR(255) NOT NULL,
    security_server_type VARCHAR(255) NOT NULL,
    request_in_ts BIGINT NOT NULL,
    request_out_ts BIGINT,
    response_in_ts BIGINT,
    response_out_ts BIGINT NOT NULL,
    client_xroad_instance VARCHAR(255),
    client_member_class VARCHAR(255),
    client_member_code VARCHAR(255),
    client_subsystem_code VARCHAR(255),
    service_xroad_instance VARCHAR(255),
    service_member_class VARCHAR(255),
    service_member_code VARCHAR(255),
    service_subsystem_code VARCHAR(255),
    service_code VARCHAR(255),
    service_version VARCHAR(255),
    represented_party_class VARCHAR(255),
    represented_party_code VARCHAR(255),
    message_id VARCHAR(255),
    message_user_id VARCHAR(255),
    message_issue VARCHAR(255),
    message_protocol_version VARCHAR(255),
    client_security_server_address VARCHAR(255),
    service_security_server_address VARCHAR(255),
    request_mime_size BIGINT,
    request_attachment_count INT4,
    response_mime_size BIGINT,
    response_attachment_count INT4,
    succeeded BOOLEAN NOT NULL,
    fault_code VARCHAR(255),
    fault_string VARCHAR(2048),
    x_request_id VARCHAR(255),
    status_code INT,
    service_type VARCHAR(255),
    request_size BIGINT,
    response_size BIGINT,
    rest_method VARCHAR(255),
    rest_path VARCHAR(255),
    xroad_version VARCHAR(255),
    CONSTRAINT operational_data_pkey PRIMARY KEY (id)
);
CREATE INDEX idx_monitoring_data_ts ON operational_data (monitoring_data_ts);
CREATE INDEX idx_request_in_ts ON operational_data (request_in_ts);
CREATE INDEX idx_request_in_ts_succeeded ON operational_data (request_in_ts, succeeded);
CREATE INDEX idx_request_in_ts_security_server_type ON operational_data (security_server_type, request_in_ts);
CREATE INDEX idx_request_in_ts_client_subsys ON operational_data
    (client_xroad_instance, client_member_class, client_member_code, client_subsystem_code, request_in_ts)
    WHERE client_subsystem_code IS NOT NULL;
CREATE INDEX idx_request_in_ts_client_no_subsys ON operational_data
    (client_xroad_instance, client_member_class, client_member_code, request_in_ts)
    WHERE client_subsystem_code IS NULL;
CREATE INDEX idx_request_in_ts_service_subsys ON operational_data
    (service_xroad_instance, service_member_class, service_member_code, service_subsystem_code, request_in_ts)
    WHERE service_subsystem_code IS NOT NULL;
CREATE INDEX idx_request_in_ts_service_no_subsys ON operational_data
    (service_xroad_instance, service_member_class, service_member_code, request_in_ts)
    WHERE service_subsystem_code IS NULL;
