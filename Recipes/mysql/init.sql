-- Run by mariadbd at every start (init-file in 99-imgbench.cnf): idempotent.
CREATE DATABASE IF NOT EXISTS imgbench;
CREATE USER IF NOT EXISTS 'bench'@'%' IDENTIFIED BY 'bench';
GRANT ALL PRIVILEGES ON imgbench.* TO 'bench'@'%';
FLUSH PRIVILEGES;
