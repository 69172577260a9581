/* leading */ -- line
 ; ; SELECT 1 /* nested /* c */ */;